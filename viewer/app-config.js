/** OHIF 3.13 configuration for mammo-node (served by node/runtime/viewer.py as /app-config.js).
 *
 * DICOMweb goes to /dicom-web on the same origin: node/runtime/viewer.py proxies it to
 * Orthanc and adds Orthanc's credentials there, so no password is ever in the browser. The
 * proxy is read-only, so uploads and SR/SEG export from the viewer are off. It passes the
 * node's outputs through unchanged (see its docstring for the one source-image workaround).
 *
 * Stock OHIF modes stay as they are (/viewer is the stock viewer); the mammography reading
 * view (/mammo) is an extension and a mode in mammo-reading.js, loaded at runtime.
 */
const dicomweb = window.location.origin + '/dicom-web';

window.config = {
  name: 'mammo-node',
  routerBasename: '/',
  extensions: ['/mammo-reading.js'],
  modes: [
    {
      // The mode lives in mammo-reading.js too (an ES module; OHIF imports it by URL).
      id: '@mammo-node/mode-reading',
      modeFactory: async args => (await import('/mammo-reading.js')).mode.modeFactory(args),
    },
  ],
  customizationService: [
    {
      // No onboarding tour popping over the images.
      'ohif.tours': { $set: [] },
    },
  ],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  allowMultiSelectExport: false,
  // The node's results are AI output for research: the dialog would hide the images.
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'mammo-node (Orthanc)',
        name: 'orthanc',
        wadoUriRoot: dicomweb,
        qidoRoot: dicomweb,
        wadoRoot: dicomweb,
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: false,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        dicomUploadEnabled: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
