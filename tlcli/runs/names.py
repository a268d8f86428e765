"""The names of the files tlcli writes into its folders, shared by the code that writes and reads them."""

CONFIG = "config.json"
LABELS = "labels.txt"
MODEL = "model.keras"
HISTORY = "history.csv"
CURVES = "curves.png"
PENALTY = "penalty.png"
METRICS = "metrics.json"
LOGS = "logs"
BACKUP = ".backup"  # per-epoch and per-stage backups while a run is in progress
IN_PROGRESS = ".in-progress"
EVALUATION = "evaluation.json"  # what `tlcli evaluate` writes into its reports folder
EXPORT_METADATA = "metadata.json"  # what `tlcli export` writes beside its model.keras
KERAS_ARCHITECTURE = "config.json"  # inside a .keras archive, beside the weights
MARKER = ".tlcli"  # names the kind of folder tlcli made (runs.outputs.OUTPUT_KINDS) and the files it wrote
UPLOADING = "uploading"  # the marker's state while a folder is uploaded to a URL (runs.remote)
TUNE_SETTINGS = "tune.json"  # a tuning directory's search
LEADERBOARD = "leaderboard.json"  # a tuning directory's finished trials
LR_FIND_PLOT = "lr_find.png"  # `tlcli lr-find`'s plot in a run; finetune's range tests add a stage name
