"""`python -m hfseg`: print the version and the models `hfseg.create_model` builds (`hfseg models`); with
arguments, the `hfseg` command (`python -m hfseg train ...`)."""

import sys

from .cli import main, print_models

if __name__ == "__main__":
    if len(sys.argv) > 1:
        main()
    else:
        print_models()
