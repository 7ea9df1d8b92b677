from nfcompress.flows import IDFConfig
from nfcompress.train import TrainSettings, train
s = TrainSettings(
    train_dirs=["/work/shared/data/photos/train"], val_dirs=["/work/shared/data/photos/val"],
    output="runs/default/nfc-small.safetensors", name="nfc-small",
    config=IDFConfig(prior_blocks=2), minutes=105, pool=40000,
    holdout=["tuxtype-data", "scribus-template", "hugin-data"], eval_minutes=10, threads=2,
)
train(s, log=lambda m: print(m, flush=True))
