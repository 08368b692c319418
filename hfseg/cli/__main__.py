"""`python -m hfseg.cli ...` (and `accelerate launch -m hfseg.cli train ...`) is the `hfseg` command."""

from . import main

if __name__ == "__main__":
    main()
