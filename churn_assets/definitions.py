"""The code location: ``dagster dev``, ``dg`` and ``dagster asset materialize -m`` load ``defs``.

Everything is discovered from the ``defs/`` folder, one sub-folder per asset group (``raw``,
``staging``, ``features``, ``model``, ``monitoring``), each holding its assets with their checks
and the sensors or schedules that watch them; ``defs/resources.py`` adds the resources and the
executor. A new group is a new folder. Importing this must stay cheap: every run worker imports
it, so heavy libraries are imported inside the assets that use them.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(project_root=Path(__file__).resolve().parent.parent)
