"""Command-line front ends. Each module has ``build_parser()`` and ``main(argv)``; the
top-level scripts named in the notes call them. Torch is imported inside commands only,
so ``--help`` is instant."""
