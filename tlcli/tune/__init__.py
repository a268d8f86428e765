"""Hyperparameter search: the search, its spaces, head and fine-tuning trials, the leaderboard."""
