// Injected into a copy of Snakemake's HTML report by tests/test_report.py: walks the report as
// a reader would (each result's entry, then its eye button) and writes what the page showed
// as JSON into a <pre> element, which `chromium --dump-dom` prints.
(function () {
  "use strict";
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function until(test, what) {
    for (let i = 0; i < 400; i++) {
      const value = test();
      if (value) return value;
      await sleep(25);
    }
    throw new Error("timed out waiting for " + what);
  }

  // Mean R, G, B and A over every pixel the browser decoded: a PNG that decodes only in part
  // (cut short, say) still has its full size, but the missing rows are transparent.
  function pixelMeans(img) {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    if (!canvas.width || !canvas.height) return null;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const sums = [0, 0, 0, 0];
    for (let i = 0; i < data.length; i++) sums[i % 4] += data[i];
    return sums.map((sum) => sum / (data.length / 4));
  }

  async function visit(path) {
    const entry = results[path];
    const seen = { path: path, mime: entry.mime_type };
    // The navigation a click on the result's name in the menu does.
    app.showResultInfo(path);
    const pathLabel = await until(
      () => [...document.querySelectorAll("span")].find(
        (span) => span.children.length === 0 && span.textContent === path),
      "the entry of " + path);
    const caption = document.querySelector("li.prose");
    seen.caption_text = caption ? caption.innerText : "";
    seen.caption_errors = caption ? caption.querySelectorAll(".system-message").length : 0;
    seen.caption_table_rows = caption
      ? [...caption.querySelectorAll("table")].map((t) => t.querySelectorAll("tbody tr").length)
      : [];
    if (entry.mime_type.startsWith("image/")) {
      // The eye button beside the path: shows the image in the main panel.
      pathLabel.parentElement.querySelector("a").click();
      const img = await until(
        () => [...document.images].find((image) => image.src === entry.data_uri),
        "the image of " + path);
      await until(() => img.complete, "the image of " + path + " to load or fail");
      seen.natural_size = [img.naturalWidth, img.naturalHeight];
      seen.pixel_means = pixelMeans(img);
    }
    return seen;
  }

  async function main() {
    const out = document.createElement("pre");
    out.id = "mtl-report-check";
    try {
      await until(() => typeof app !== "undefined" && document.querySelector("#app").innerText,
                  "the report app to render");
      const report = { landing_text: document.querySelector("#app").innerText, results: [] };
      for (const path of Object.keys(results)) report.results.push(await visit(path));
      out.textContent = JSON.stringify(report);
    } catch (err) {
      out.textContent = JSON.stringify({ error: String(err) });
    }
    document.body.appendChild(out);
  }

  window.addEventListener("load", main);
})();
