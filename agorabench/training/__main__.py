"""`python -m agorabench.training ...`: what `accelerate launch` runs in each process (sft.main)."""
import sys

from agorabench.training.sft import main

sys.exit(main())
