"""`python -m tensorar <stage> [args]` (and `torchrun -m tensorar <stage> ...`): the same as the
`tensorar <stage>` console script; the stages live in tensorar/stages/, one module each (cli.py)."""
from tensorar.cli import main

if __name__ == "__main__":
    main()
