"""[raw] The source landed as it arrived, and the sensor that lands new files."""
