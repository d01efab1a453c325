"""`python -m newsclf` (also `torchrun -m newsclf` and `accelerate launch -m newsclf`)."""

from newsclf.cli import main

main()
