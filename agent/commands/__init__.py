"""One module per `fieldlink` subcommand."""
