from panet_cli.cli.app import main

main()
