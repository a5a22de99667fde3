"""The command line (``llmsight``, typer + rich): the one room that may import every other.

``app`` registers the commands; each command module imports its room lazily, so ``--help`` stays
fast. ``settings`` gathers every room's settings into the one registry the README's table comes from.
"""
