// The API reference: docs/openapi.yaml rendered by Redoc (vendored from npm, no CDN).
'use strict';

Redoc.init('/openapi.yaml', {
  expandResponses: '200,201,204',
  hideHostname: false,
  jsonSampleExpandLevel: 3,
  sortPropsAlphabetically: false,
}, document.getElementById('redoc'));
