"""``rask.ml``: ``dask_ml``'s linear regression and train/test split over
rask dataframes (``rask_dataframe::ml`` in Rust)."""

from . import linear_model, model_selection

__all__ = ["linear_model", "model_selection"]
