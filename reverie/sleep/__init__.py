"""Sleep: consolidate prioritised episodes into the weights without forgetting."""
