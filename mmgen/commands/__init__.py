"""Subcommands of the ``mmgen`` command line, one module each (see ``mmgen.cli``)."""
