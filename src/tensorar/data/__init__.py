"""Data helpers: deterministic ImageFolder loading (`imagefolder`). Token codes written by
`tensorar.extract_codes` are read back with `tensorar.extract_codes.load_codes`."""
from tensorar.data.imagefolder import (
    center_crop_arr,
    image_folder,
    load_all,
    to_signed_tensor,
)

__all__ = ["center_crop_arr", "image_folder", "load_all", "to_signed_tensor"]
