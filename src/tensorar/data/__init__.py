"""Data: image folders and captioned text-image sets (`imagefolder`, `captions`), the token-code folders
(`codes`) and the conditions stored beside them (`conditions`), caption text features (`text_features`:
T5 as LlamaGen). The embedded toy's datasets and text encoder live in `tensorar.toy`."""
