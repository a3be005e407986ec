import json
import os

# modelop.train
def fit(df):
    os.makedirs("outputDir/nested", exist_ok=True)
    with open("outputDir/model.json", "w") as f:
        json.dump({"rows": len(df), "mean_x": float(df["x"].mean())}, f)
    with open("outputDir/nested/notes.txt", "w") as f:
        f.write("trained\n")
