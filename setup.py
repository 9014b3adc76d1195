"""Install with `pip install -e .` (the Makefile does it inside .venv, after requirements.txt)."""

from setuptools import find_packages, setup

setup(
    name="slowfast_bmvit",
    version="0.1.0",
    description="BMViT: Multiscale Vision Transformers meet Bipartite Matching for single-stage action localization",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["slowfast_bmvit", "slowfast_bmvit.*"]),
    install_requires=[
        "torch>=2.8",  # the oldest release the whole test suite passes with (INSTALL.md, "Versions")
        "numpy>=1.24",
        "scipy>=1.10",
        "pandas>=2.0",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "PyYAML>=6.0",
        "opencv-python-headless>=4.8",
        "av>=11",
        "simplejson>=3.17",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        # pyslowfast==1.0 (the official AVA evaluator, a test oracle) must be installed with --no-deps:
        # its own requirements would pull a CUDA torch. The Makefile does that.
        "dev": ["pytest>=7", "transformers>=4.40", "tensorboard>=2.10", "imageio-ffmpeg>=0.4", "onnx>=1.16",
                "onnxscript>=0.2", "onnxruntime>=1.18"],
        "tensorboard": ["tensorboard>=2.10"],
        "torchvision": ["torchvision"],
    },
)
