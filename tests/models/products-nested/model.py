# A training function writing a product at the top of outputDir/ and one in a
# sub-folder, with bytes that are not text, for fetching products back.
import os


# modelop.train
def fit(df):
    os.makedirs("outputDir/weights", exist_ok=True)
    with open("outputDir/model.json", "w") as f:
        f.write('{"rows": %d}\n' % len(df))
    with open("outputDir/weights/layer 1.bin", "wb") as f:
        f.write(bytes(range(256)) * 300)
