"""The benchmark: our gateway against librbd-direct and tgt, side by side in one run."""
