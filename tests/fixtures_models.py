"""Small fitted estimators for tests: quick to fit, same shapes as the demo's."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.training import make_house_price_data, make_iris_data


def build_estimators() -> dict[str, Any]:
    """house-price (forest regressor), house-price-retrained (the same fitted with another
    seed: a different file for a next version) and iris (logistic classifier with string
    classes)."""
    house = make_house_price_data(rows=400, seed=1)
    regressor = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0, n_jobs=1)
    regressor.fit(house.drop(columns=["price"]), house["price"])
    retrained = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=1, n_jobs=1)
    retrained.fit(house.drop(columns=["price"]), house["price"])
    iris = make_iris_data()
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    classifier.fit(iris.drop(columns=["species"]), iris["species"])
    return {"house-price": regressor, "house-price-retrained": retrained, "iris": classifier}


def register_house_price_v2(session: Any, artifacts: Any, model_files: dict[str, Any]) -> None:
    """Register the retrained house-price file as house-price@2, committed."""
    from models.registry import register_model

    register_model(
        session,
        artifacts,
        name="house-price",
        artifact_path=model_files["house-price-retrained"],
        registered_by="test",
    )
    session.commit()
