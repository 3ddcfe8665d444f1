"""The matcher network (EfficientLoFTR with matchability reweighting) and its weights."""
