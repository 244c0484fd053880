"""The extra commands of ``esc50-lightning``, one module each with a ``main(argv)``."""
