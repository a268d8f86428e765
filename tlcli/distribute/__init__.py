"""Where training runs: tf.distribute strategies, clusters, and sharing data out."""
