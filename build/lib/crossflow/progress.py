"""Progress bars: tqdm's widget bars where ipywidgets is installed (JupyterLab with the ``lab`` extra), text bars
otherwise. ``tqdm.auto`` alone warns "IProgress not found" in every kernel without ipywidgets (papermill runs).
``TQDM_DISABLE=1`` turns them off (the papermill driver sets it, so results/ hold no progress-bar lines)."""
try:
    import ipywidgets  # noqa: F401
    from tqdm.auto import tqdm
except ImportError:
    from tqdm.std import tqdm

__all__ = ["tqdm"]
