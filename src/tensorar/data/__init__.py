"""Data: image folders and captioned text-image sets (`imagefolder`, `captions`), the token-code folders
(`codes`) and the conditions stored beside them (`conditions`), caption text features (`text_features`:
T5 as LlamaGen; `toy_text`: ours), and the embedded toy's datasets (`captioned_digits`)."""
