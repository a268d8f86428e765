"""`tlcli audit`: what is wrong with a labelled dataset before it costs accuracy.

Three sections, all read from one extraction of a frozen backbone's features: likely label
errors (`label_errors`), near-duplicates and the leakage they make across splits
(`duplicates`), and images far from every other (`outliers`). `audit` runs them and writes the
reports; nothing here changes, moves or deletes a user's image.
"""
