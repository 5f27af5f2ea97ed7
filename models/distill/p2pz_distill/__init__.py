"""p2pz_distill: distils one pix2pix-zero edit direction into a pix2pix-style image-to-image GAN.

Modules: png (PNG reading without Pillow), dataset (the pairs manifest written by
`p2pz distill pairs`), networks (ResNet and U-Net generators, conditional PatchGAN), losses
(adversarial, L1, feature matching, optional VGG perceptual), export (ONNX with the runtime's
contract, meta.json) and train (the loop; `python3 train.py`).
"""
