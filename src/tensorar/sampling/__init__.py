"""Sampling a trained model (beside training/): the typed inputs of the stages that load a model
(options.py), the sampler (sampler.py: model, decoder, options, device, dtype), class labels per sample
index (labels.py), resumable sharded sampling into one .npz (shards.py) and prompt-file sampling in a
benchmark's layout (prompts.py). The stages sample, sample_prompts and time_sampling are thin wrappers."""
