"""govdata: one namespace for the pipeline. The layout's top-level folders (transforms/,
warehouse/, standards/, expectations/) are its subpackages govdata.transforms, … — a wheel
nests them under govdata/ (pyproject.toml: package-dir); in a source checkout they sit beside
this folder, so the checkout's root is part of this package's search path."""
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "transforms").is_dir() \
        and (_CHECKOUT / "transforms" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))
