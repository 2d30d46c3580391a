//! Margin-softmax kernels and the device facade they are written against.
#![cfg_attr(target_arch = "nvptx64", no_std)]
