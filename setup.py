"""Install ultralytics-prune-plugin.

Besides the package, the wheel carries two things at the top of site-packages: ``ultralytics_prune_plugin.pth``,
which Python runs at start-up, and the tiny module it imports, which activates the plugin when ``ultralytics`` is
imported. The plugin's default configuration (``cfg/``) is installed as ``ultralytics_prune_plugin/cfg``.
"""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
PTH = "ultralytics_prune_plugin.pth"


class BuildWithStartupHook(build_py):
    """Build the package and put the start-up ``.pth`` file at the root of the wheel."""

    def run(self):
        super().run()
        self.copy_file(str(HERE / PTH), str(Path(self.build_lib) / PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


setup(
    name="ultralytics-prune-plugin",
    version="0.1.0",
    description="Structured pruning (DepGraph, Network Slimming) for Ultralytics YOLO 8.1-8.4, inside the stock yolo CLI",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="AGPL-3.0",
    python_requires=">=3.8",
    packages=find_packages(include=["ultralytics_prune_plugin", "ultralytics_prune_plugin.*"])
    + ["ultralytics_prune_plugin.cfg"],
    package_dir={"ultralytics_prune_plugin.cfg": "cfg"},
    package_data={"ultralytics_prune_plugin.cfg": ["*.yaml"]},
    py_modules=["_ultralytics_prune_plugin_startup"],
    cmdclass={"build_py": BuildWithStartupHook},
    install_requires=[
        "ultralytics>=8.1.0,<8.5",
        "torch>=2.0,<=2.14.1",
        "torchvision>=0.15,<=0.29.1",
        "torch-pruning>=1.6.0,<1.7",
        "onnx>=1.14,<1.24",
        "onnxruntime>=1.16,<1.33",
        "matplotlib>=3.7",
        "numpy>=1.23",
        "pyyaml>=5.3",
    ],
    extras_require={
        "gpu": ["onnxruntime-gpu>=1.16,<1.33"],
        # formats=openvino / runtime=openvino; nncf: Ultralytics' OpenVINO INT8 export (int8=True) imports it
        "openvino": ["openvino>=2024.0.0", "nncf>=2.14.0"],
        # import-linter checks the import layers (tests/test_layers.py); 2.6 brought acyclic_siblings, on Python 3.10+
        # pytest-xdist: `make test` runs two workers, and filelock lets them build the shared fixtures once
        # (tests/conftest.py; torch installs it too); cloudpickle: Ultralytics 8.4's DDP launcher (tests/test_ddp.py)
        "test": ["pytest>=7", "pytest-xdist>=3", "filelock>=3", "cloudpickle>=3.1.1",
                 "import-linter>=2.6; python_version >= '3.10'"],
    },
    classifiers=[
        "License :: OSI Approved :: GNU Affero General Public License v3",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
