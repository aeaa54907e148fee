"""The ``cityunion`` command line. Each area adds its subcommands in its own module."""
