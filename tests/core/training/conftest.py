import pytest

from tests.helpers.models import sentiment


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.parquet"
    sentiment(256).to_parquet(path, index=False)
    return str(path)
