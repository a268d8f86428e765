"""Training: settings, fitting, callbacks, the train and finetune workflows and the head solver."""
