"""Images and datasets: walking folders, checking files, splits, the tf.data pipeline, inspection."""
