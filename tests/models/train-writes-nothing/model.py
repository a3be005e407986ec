# A training function that forgets to write its artifacts under outputDir/.
# modelop.train
def fit(df):
    print("trained on", len(df), "rows")
