"""python -m kcompat."""
from .cli import main

raise SystemExit(main())
