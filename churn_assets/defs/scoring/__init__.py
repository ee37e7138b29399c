"""[scoring] The champion's scores of every observed customer, and their export for the CRM."""
