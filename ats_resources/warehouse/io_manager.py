"""I/O manager that stores polars frames in the warehouse, one table per asset.

A partitioned output replaces exactly its partition window (one partition or a backfill range)
in one transaction; an input loads the upstream window the downstream partition maps to.
Assets say which column holds the partition date with the ``partition_column`` definition
metadata (default ``session``).
"""

from datetime import date

import dagster as dg
import polars as pl

from ats_resources.warehouse.base import WarehouseError, WarehouseResource

DEFAULT_PARTITION_COLUMN = "session"


def _table_name(key: dg.AssetKey) -> str:
    return "__".join(key.path)


def _window_dates(window: dg.TimeWindow) -> tuple[date, date]:
    # Partition windows are whole days in the partitions' own time zone: their dates bound the keys.
    return window.start.date(), window.end.date()


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Writes and reads asset tables through a :class:`WarehouseResource`."""

    warehouse: dg.ResourceDependency[WarehouseResource]

    def _partition_column(self, definition_metadata: dict | None) -> str:
        return str((definition_metadata or {}).get("partition_column", DEFAULT_PARTITION_COLUMN))

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise WarehouseError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; the warehouse stores polars DataFrames"
            )
        table = _table_name(context.asset_key)
        if context.has_asset_partitions:
            column = self._partition_column(context.definition_metadata)
            start, end = _window_dates(context.asset_partitions_time_window)
            if column not in obj.columns:
                raise WarehouseError(f"{table} has no partition column {column!r}")
            outside = obj.filter(~pl.col(column).is_between(start, end, closed="left")).height
            if outside:
                raise WarehouseError(
                    f"{table}: {outside} rows have {column} outside the partition window [{start}, {end}); "
                    "an asset may only write its own partitions"
                )
            rows = self.warehouse.replace_window(
                table, obj, partition_column=column, start=start, end=end
            )
        else:
            rows = self.warehouse.replace_table(table, obj)
        context.add_output_metadata(
            {
                "warehouse_table": table,
                "warehouse_location": self.warehouse.location,
                "rows_written": rows,
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = _table_name(context.asset_key)
        if context.has_asset_partitions:
            upstream = context.upstream_output
            column = self._partition_column(upstream.definition_metadata if upstream else None)
            start, end = _window_dates(context.asset_partitions_time_window)
            return self.warehouse.read_window(table, partition_column=column, start=start, end=end)
        return self.warehouse.read_table(table)
