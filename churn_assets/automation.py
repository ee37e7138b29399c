"""Sensors, schedules and jobs that make the graph run itself."""

import dagster as dg

SENSORS: list[dg.SensorDefinition] = []
SCHEDULES: list[dg.ScheduleDefinition] = []
JOBS: list = []
