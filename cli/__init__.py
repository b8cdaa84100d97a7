"""cli: the command-line layer on top of every package (ccnet ← export ← calib ← runtime ← cli).

One module per command, each only composing argument groups (``cli.args``) and calling the
importable function that does the work; ``cli.main`` is the ``ccnet`` command with every
command as a subcommand, and each module's ``main`` is also a ``ccnet-<name>`` console script.
"""
