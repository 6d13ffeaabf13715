"""From a file or a state_dict to a ready network with its description."""
