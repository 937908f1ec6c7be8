"""Suite-wide settings."""

import torch

# The suite's models are tiny, so a second intra-op thread buys little. When anything else is
# running on a 2-core machine (DataLoader workers, subprocess servers, another job), OpenMP threads
# spinning against each other made small ops up to 100x slower (measured). One thread keeps the
# suite's run time independent of the machine's load.
torch.set_num_threads(1)
