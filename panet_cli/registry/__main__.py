"""``python -m panet_cli.registry [--half FILE...] [--refresh-shipped] [--hub-revision REV]``."""

from __future__ import annotations

from pathlib import Path

from panet_cli.registry import __doc__ as _doc
from panet_cli.registry.maintain import refresh_shipped, set_hub_revision


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m panet_cli.registry", description=(_doc or "").split("\n\n")[0])
    parser.add_argument("--refresh-shipped", action="store_true",
                        help="rewrite sha256/size/params/config/scores of shipped files into the manifest")
    parser.add_argument("--hub-revision", help="pin this revision (commit) of the hub repo in the manifest")
    parser.add_argument("--half", nargs="+", type=Path, metavar="FILE",
                        help="store these weights files in fp16 (check benchmarks/fp16_storage.py first); "
                             "runs before --refresh-shipped")
    parser.add_argument("--window", nargs=2, metavar=("FILE", "W:OVERLAP"),
                        help="make W:OVERLAP the file's default attention window (measure with "
                             "benchmarks/attention_worth.py first); needs --why; runs before --refresh-shipped")
    parser.add_argument("--why", help="the measurement behind --window, stored in the file as window_choice")
    parser.add_argument("--manifest", type=Path, help="manifest to edit (default: the one panet uses)")
    args = parser.parse_args(argv)
    if not (args.refresh_shipped or args.hub_revision or args.half or args.window):
        parser.error("nothing to do: pass --half, --window, --refresh-shipped and/or --hub-revision")
    if args.window and not args.why:
        parser.error("--window needs --why: the measurement that chose the window")
    if args.half:
        from panet_cli.loading.checkpoint import store_fp16  # torch: only when asked for

        for file in args.half:
            before, after = store_fp16(file)
            print(f"{file}: stored in fp16, {before} -> {after} bytes")
    if args.window:
        from panet_cli.errors import CheckpointError
        from panet_cli.loading.checkpoint import store_window

        file, spec = args.window
        try:
            window, overlap = (int(part) for part in spec.split(":"))
        except ValueError:
            parser.error(f"--window {file} {spec}: give the window as W:OVERLAP, e.g. 12:0")
        try:
            old = store_window(file, window, overlap, args.why)
        except (CheckpointError, OSError) as e:
            parser.error(str(e))
        print(f"{file}: attention window {old} -> {window}/{overlap}")
    if args.refresh_shipped:
        for line in refresh_shipped(args.manifest) or ["no shipped entry changed"]:
            print(line)
    if args.hub_revision:
        set_hub_revision(args.hub_revision, args.manifest)
        print(f"hub revision pinned to {args.hub_revision}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
