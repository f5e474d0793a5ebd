// The example site's script: reads /stream/ with fetch() and shows each chunk as it arrives,
// which makes it visible that the server flushes every line instead of buffering the response.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const output = document.getElementById("stream-output");
  for (const button of document.querySelectorAll("button[data-stream-url]")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      output.hidden = false;
      output.textContent = "";
      try {
        const response = await fetch(button.dataset.streamUrl);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          output.textContent += decoder.decode(value, { stream: true });
        }
      } catch (error) {
        output.textContent += `\n(stream failed: ${error})`;
      } finally {
        button.disabled = false;
      }
    });
  }
});
