"""Command-line tools: ``torchseq <tool> --config …`` beside LightningCLI's ``fit``/``test``/….

Each tool is a module here with a ``main(args)``; :data:`torchseq.cli.TOOLS` maps the sub-command name
to it. Tools build on the library (tasks, data, models); library modules never import a tool.
"""
