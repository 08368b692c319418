"""`python -m hfseg ...` is the `hfseg` command (`python -m hfseg models`, `python -m hfseg predict ...`)."""

from .cli import main

if __name__ == "__main__":
    main()
