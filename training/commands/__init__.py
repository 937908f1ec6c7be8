"""The `vaegan-train` commands, one module each; `training.cli` registers them in its order.

Each module's `register(subparsers)` adds the command's subparser and the function it runs. Every
command that runs a checkpoint reads images through the checkpoint's own preprocessing, so their
size always matches the model. Refusals are raised as ValueError / OSError with a message for the
user; `training.cli.main` turns them into `vaegan-train <command>: error: ...` and exit code 2.

The modules import this package's `_args` by its full name and this file imports none of them, so
no command module and no module a command drives can import its way into a cycle through here.
"""
