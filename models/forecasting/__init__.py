"""Battery forecasting: window features, the LSTM, AutoML candidates, CV, metrics, the pyfunc."""
