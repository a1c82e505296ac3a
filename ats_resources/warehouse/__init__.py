"""The warehouse: tables of asset data, replaced a partition window at a time.

``PostgresWarehouse`` lives in ``ats_resources.warehouse.postgres`` and is imported only when
selected (ATS_WAREHOUSE=postgres), so the embedded default never loads psycopg's pool.
"""

from ats_resources.warehouse.base import WarehouseError, WarehouseResource
from ats_resources.warehouse.duckdb import DuckDBWarehouse
from ats_resources.warehouse.io_manager import WarehouseIOManager

__all__ = ["DuckDBWarehouse", "WarehouseError", "WarehouseIOManager", "WarehouseResource"]
